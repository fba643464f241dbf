"""Build an app image from raw segments with esptool's Python API (test oracle).

Reads one JSON object on stdin:
  {"chip": "esp32c3", "segments": [{"addr": int, "data": hex, "name": str}, ...],
   "flash_mode": int, "flash_size_freq": int, "entry": int, "min_rev": int,
   "min_rev_full": int, "max_rev_full": int, "append_digest": bool}
and writes the bytes that CHIP_DEFS[chip].BOOTLOADER_IMAGE().save(None) returns,
hex-encoded, on stdout. Segments are ELFSection objects, so a section named
".flash.appdesc" is moved to the front of the flash segments as elf2image does.
"""

import json
import sys

from esptool.bin_image import ELFSection
from esptool.targets import CHIP_DEFS

spec = json.load(sys.stdin)
img = CHIP_DEFS[spec["chip"]].BOOTLOADER_IMAGE()
img.segments = [
    ELFSection(s["name"].encode(), s["addr"], bytes.fromhex(s["data"]), 0)
    for s in spec["segments"]
]
img.flash_mode = spec["flash_mode"]
img.flash_size_freq = spec["flash_size_freq"]
img.entrypoint = spec["entry"]
img.min_rev = spec["min_rev"]
img.min_rev_full = spec["min_rev_full"]
img.max_rev_full = spec["max_rev_full"]
img.append_digest = spec["append_digest"]
sys.stdout.write(img.save(None).hex())
