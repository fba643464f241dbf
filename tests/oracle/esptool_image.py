"""Describe ESP app images with esptool's own parser, as JSON (test oracle).

Usage: python esptool_image.py FILE...
Prints one JSON list with, per file, what esptool's bin_image.LoadFirmwareImage
and cmds._parse_app_info/_parse_bootloader_info report. Chip is taken from the
header's chip id, as `esptool image-info` does without --chip.
"""

import json
import struct
import sys

from esptool.bin_image import LoadFirmwareImage
from esptool.cmds import _parse_app_info, _parse_bootloader_info
from esptool.targets import CHIP_DEFS


def describe(path):
    data = open(path, "rb").read()
    chip_id = struct.unpack_from("<H", data, 12)[0]
    chip = next(
        (n for n, c in CHIP_DEFS.items() if getattr(c, "IMAGE_CHIP_ID", None) == chip_id),
        None,
    )
    out = {"file": path, "chip": chip, "chip_id": chip_id}
    if chip is None:
        out["error"] = "unknown chip id"
        return out
    try:
        img = LoadFirmwareImage(chip, data)
    except Exception as e:  # noqa: BLE001 - the oracle reports what esptool says
        out["error"] = str(e)
        return out
    out["entry"] = img.entrypoint
    out["flash_mode"] = img.flash_mode
    out["flash_size_freq"] = img.flash_size_freq
    out["min_rev"] = img.min_rev
    out["min_rev_full"] = img.min_rev_full
    out["max_rev_full"] = img.max_rev_full
    out["segments"] = []
    app_desc_seg = None
    boot_desc_seg = None
    for seg in img.segments:
        mem = seg.get_memory_type(img)
        out["segments"].append(
            {
                "load_addr": seg.addr,
                "len": len(seg.data),
                "header_offset": seg.file_offs,
                "flash": img.is_flash_addr(seg.addr),
                "mem": mem,
            }
        )
        if "DROM" in mem and app_desc_seg is None:
            app_desc_seg = seg.data
        elif "DRAM" in mem and len(seg.data) >= 80:
            boot_desc_seg = seg.data
    out["checksum_stored"] = img.checksum
    out["checksum_computed"] = img.calculate_checksum()
    out["sha256_appended"] = bool(img.append_digest)
    if img.append_digest:
        out["sha256_stored"] = img.stored_digest.hex()
        out["sha256_computed"] = img.calc_digest.hex()
        out["data_length"] = img.data_length
    out["app_desc"] = None
    if app_desc_seg:
        d = _parse_app_info(app_desc_seg)
        if d:
            out["app_desc"] = {
                k: d[k]
                for k in ("secure_version", "version", "project_name", "time", "date", "idf_ver", "app_elf_sha256")
            }
    out["bootloader_desc"] = None
    if out["app_desc"] is None and boot_desc_seg:
        d = _parse_bootloader_info(boot_desc_seg)
        if d:
            out["bootloader_desc"] = {"version": d["version"], "idf_ver": d["idf_ver"], "date_time": d["date_time"]}
    return out


if __name__ == "__main__":
    json.dump([describe(p) for p in sys.argv[1:]], sys.stdout)
