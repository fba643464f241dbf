"""Write a minimal ELF32 (sections only, no program headers) for elf2image.

Reads JSON on stdin: {"machine": 0x5E|0xF3, "entry": int,
  "sections": [{"name": str, "addr": int, "data": hex}, ...], "out": path}
Each section becomes an SHT_PROGBITS, SHF_ALLOC section; a .shstrtab ends the
list. That is all esptool's ELFFile reads.
"""

import json
import struct
import sys

spec = json.load(sys.stdin)
secs = spec["sections"]
names = b"\x00"
name_offs = []
for s in secs + [{"name": ".shstrtab"}]:
    name_offs.append(len(names))
    names += s["name"].encode() + b"\x00"

body = b""
data_offs = []
base = 0x34
for s in secs:
    data_offs.append(base + len(body))
    body += bytes.fromhex(s["data"])
    body += b"\x00" * (-len(body) % 4)
strtab_off = base + len(body)
body += names
body += b"\x00" * (-len(body) % 4)
shoff = base + len(body)

ident = b"\x7fELF" + bytes([1, 1, 1]) + b"\x00" * 9
header = struct.pack(
    "<16sHHLLLLLHHHHHH", ident, 2, spec["machine"], 1, spec["entry"], 0, shoff, 0,
    0x34, 0x20, 0, 0x28, len(secs) + 2, len(secs) + 1,
)
shdrs = b"\x00" * 0x28
for s, n, off in zip(secs, name_offs, data_offs):
    size = len(bytes.fromhex(s["data"]))
    shdrs += struct.pack("<LLLLLLLLLL", n, 1, 0x2, s["addr"], off, size, 0, 0, 4, 0)
shdrs += struct.pack("<LLLLLLLLLL", name_offs[-1], 3, 0, 0, strtab_off, len(names), 0, 0, 1, 0)
open(spec["out"], "wb").write(header + body + shdrs)
