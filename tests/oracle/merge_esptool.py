"""Run esptool merge-bin on the same files and offsets as an esptool command line (test oracle).

Usage: python merge_esptool.py OUT COMMAND_FILE [EXTRA_ARG...]

COMMAND_FILE holds one line, `esptool --chip CHIP write-flash [options] OFFSET FILE ...`
(what `otter flash-plan --esptool` prints). This runs esptool 5's merge-bin
with the same chip, options, offsets and files instead of write-flash,
writing OUT; EXTRA_ARGs go right after `merge-bin -o OUT` (for example
`--pad-to-size 4MB -t 0x1000`). Prints the esptool version on stdout.
"""

import os
import shlex
import sys

import esptool


def main():
    out, command_file, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(command_file) as f:
        words = shlex.split(f.read())
    if words[:2] != ["esptool", "--chip"] or words[3] != "write-flash":
        raise SystemExit(f"not an esptool write-flash command line: {words[:4]}")
    # The flash options must come from the command line, not the environment.
    for var in ("ESPTOOL_FS", "ESPTOOL_FM", "ESPTOOL_FF"):
        os.environ.pop(var, None)
    argv = ["--chip", words[2], "merge-bin", "-o", out] + extra + words[4:]
    esptool.main(argv)
    print(esptool.__version__)


if __name__ == "__main__":
    main()
