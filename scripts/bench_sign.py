#!/usr/bin/env python3
"""Secure Boot v2 sign and verify: espsecure (esptool 5.6) in-process and as
whole commands, and `otter sign` / `otter image verify` as whole commands, on
the same image and keys in the same run. Median of N runs.

    bench_sign.py OTTER PYTHON IMAGE KEYDIR [N]

KEYDIR holds SCHEME.pem and SCHEME.pub.pem for rsa3072, ecdsa256, ecdsa384
(crates/otter-format/tests/data/secure-boot).
"""
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time


def median_ms(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    otter, python, image, keydir = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 5
    import espsecure

    work = tempfile.mkdtemp()
    size = os.path.getsize(image)
    print(f"image: {image} ({size} bytes), median of {n}")
    print("| scheme | job | otter (command) | espsecure (command) | espsecure (in-process) |")
    print("|---|---|---|---|---|")
    for scheme in ["rsa3072", "ecdsa256", "ecdsa384"]:
        key = os.path.join(keydir, f"{scheme}.pem")
        pub = os.path.join(keydir, f"{scheme}.pub.pem")
        o_out = os.path.join(work, f"otter-{scheme}.bin")
        e_out = os.path.join(work, f"esp-{scheme}.bin")

        def esp_sign_inproc():
            with open(key, "rb") as k, open(image, "rb") as d, contextlib.redirect_stdout(io.StringIO()):
                espsecure.sign_data("2", [k], e_out, False, False, None, None, None, d)

        def esp_verify_inproc():
            with open(pub, "rb") as k, open(e_out, "rb") as d, contextlib.redirect_stdout(io.StringIO()):
                espsecure.verify_signature("2", False, None, k, d)

        o_sign = median_ms(lambda: run([otter, "sign", image, "--key", key, "-o", o_out]), n)
        e_sign = median_ms(
            lambda: run([python, "-m", "espsecure", "sign-data", "--version", "2",
                         "--keyfile", key, "-o", e_out, image]), n)
        e_sign_in = median_ms(esp_sign_inproc, n)
        o_ver = median_ms(lambda: run([otter, "image", "verify", e_out, "--key", pub]), n)
        e_ver = median_ms(
            lambda: run([python, "-m", "espsecure", "verify-signature", "--version", "2",
                         "--keyfile", pub, o_out]), n)
        e_ver_in = median_ms(esp_verify_inproc, n)
        print(f"| {scheme} | sign | {o_sign:.1f} ms | {e_sign:.1f} ms | {e_sign_in:.1f} ms |")
        print(f"| {scheme} | verify | {o_ver:.1f} ms | {e_ver:.1f} ms | {e_ver_in:.1f} ms |")


if __name__ == "__main__":
    main()
