#!/usr/bin/env python3
"""An ArduinoOTA (espota) uploader, written from the protocol description
in docs/uploaders.md, behaving on the wire as arduino-esp32's
tools/espota.py does (the script PlatformIO's `upload_protocol = espota`
and the Arduino IDE run):

* the host listens on TCP `host_port`, then sends the UDP invitation
  `<cmd> <host_port> <size> <md5>\\n` (cmd 0 app, 100 filesystem), up to 10
  times, waiting `--timeout` seconds for each reply; the reply is read with
  one recv of at most 37 bytes (`--generation legacy`, clients before
  arduino-esp32 3.3.1) or 69 bytes (`current`);
* `AUTH <nonce>`: the nonce's length picks the scheme (32 hex: MD5,
  64 hex: SHA-256 + PBKDF2); the answer is `200 <cnonce> <response>\\n`;
  a failed SHA-256 answer is retried once with the MD5 of the password as
  the stored hash, after a fresh invitation, as the current script does;
* the device connects back within 10 s; the image goes in 1024-byte
  chunks, each followed by one recv of at most 10 bytes (10 s timeout);
* success when the last chunk's reply contains `OK`, else it waits for a
  reply that does (10 reads of 30 s; 5 of 60 s for `legacy`).

Exit status 0 on `OK`, 1 otherwise; every device reply is printed.
"""

import argparse
import hashlib
import os
import socket
import sys

FLASH = 0
SPIFFS = 100
AUTH = 200


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def md5hex(b):
    return hashlib.md5(b).hexdigest()


def sha256hex(b):
    return hashlib.sha256(b).hexdigest()


def answer(nonce, password, filename, size, file_md5, device_ip, md5_target):
    """The (cnonce, response) for the device's nonce."""
    text = "%s%u%s%s" % (filename, size, file_md5, device_ip)
    if len(nonce) == 32:
        cnonce = md5hex(text.encode())
        passmd5 = md5hex(password.encode())
        response = md5hex(("%s:%s:%s" % (passmd5, nonce, cnonce)).encode())
        return cnonce, response
    cnonce = sha256hex(text.encode())
    stored = md5hex(password.encode()) if md5_target else sha256hex(password.encode())
    key = hashlib.pbkdf2_hmac(
        "sha256", stored.encode(), ("%s:%s" % (nonce, cnonce)).encode(), 10000
    ).hex()
    response = sha256hex(("%s:%s:%s" % (key, nonce, cnonce)).encode())
    return cnonce, response


def invite(args, message, size, file_md5, md5_target):
    """Sends the invitation and authenticates; True when the device said OK."""
    read = 37 if args.generation == "legacy" else 69
    remote = (args.ip, args.port)
    for attempt in range(10):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(message.encode(), remote)
        udp.settimeout(args.timeout)
        try:
            data = udp.recv(read).decode(errors="replace")
            break
        except OSError:
            udp.close()
            log("no answer to invitation %d" % (attempt + 1))
    else:
        log("No response from the ESP")
        return False
    log("invitation reply: %r" % data)
    if data == "OK":
        udp.close()
        return True
    if not data.startswith("AUTH"):
        log("Bad Answer: %s" % data)
        udp.close()
        return False
    nonce = data.split()[1]
    if not args.auth:
        log("the device asks for a password and none was given")
        udp.close()
        return False
    cnonce, response = answer(
        nonce, args.auth, args.file, size, file_md5, args.ip, md5_target
    )
    udp.sendto(("%d %s %s\n" % (AUTH, cnonce, response)).encode(), remote)
    udp.settimeout(10)
    try:
        data = udp.recv(32).decode(errors="replace")
    except OSError:
        log("No Answer to our Authentication")
        udp.close()
        return False
    udp.close()
    log("authentication reply: %r" % data)
    return data == "OK"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-i", "--ip", required=True)
    p.add_argument("-p", "--port", type=int, default=3232)
    p.add_argument("-I", "--host_ip", default="0.0.0.0")
    p.add_argument("-P", "--host_port", type=int, default=0)
    p.add_argument("-a", "--auth", default="")
    p.add_argument("-f", "--file", required=True)
    p.add_argument("-s", "--spiffs", action="store_true")
    p.add_argument("-m", "--md5-target", action="store_true")
    p.add_argument("-t", "--timeout", type=float, default=10)
    p.add_argument("--generation", choices=["current", "legacy"], default="current")
    # Accepted as PlatformIO passes them; this client always logs to stderr.
    p.add_argument("-d", "--debug", action="store_true")
    p.add_argument("-r", "--progress", action="store_true")
    args = p.parse_args()

    size = os.path.getsize(args.file)
    with open(args.file, "rb") as f:
        content = f.read()
    file_md5 = md5hex(content)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((args.host_ip, args.host_port))
    server.listen(1)
    host_port = server.getsockname()[1]
    command = SPIFFS if args.spiffs else FLASH
    message = "%d %d %d %s\n" % (command, host_port, size, file_md5)

    ok = invite(args, message, size, file_md5, args.md5_target)
    if not ok and args.auth and args.generation == "current" and not args.md5_target:
        log("retrying with the MD5 of the password as the device's stored hash")
        ok = invite(args, message, size, file_md5, True)
    if not ok:
        return 1

    server.settimeout(10)
    try:
        conn, _ = server.accept()
    except OSError:
        log("No response from device")
        return 1
    last_ok = False
    replies = []
    for offset in range(0, size, 1024):
        chunk = content[offset : offset + 1024]
        conn.settimeout(10)
        try:
            conn.sendall(chunk)
            res = conn.recv(10).decode(errors="replace")
        except OSError as e:
            log("Error Uploading: %s" % e)
            log("device replies: %s" % "".join(replies))
            return 1
        replies.append(res)
        last_ok = "OK" in res
    if last_ok:
        log("Success")
        return 0
    tries, wait = (5, 60) if args.generation == "legacy" else (10, 30)
    for _ in range(tries):
        conn.settimeout(wait)
        try:
            data = conn.recv(32).decode(errors="replace")
        except OSError:
            break
        log("Result: %r" % data)
        replies.append(data)
        if "OK" in data:
            log("Success")
            return 0
    log("Error response from device")
    log("device replies: %s" % "".join(replies))
    return 1


if __name__ == "__main__":
    sys.exit(main())
