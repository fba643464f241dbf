#!/usr/bin/env python3
"""littlefs-python as an oracle for otter's web-UI images.

  littlefs_esp.py check IMAGE FOLDER
      Mounts IMAGE with littlefs (littlefs-python's C littlefs) configured as
      esp_littlefs configures it by default (block size 4096, block count =
      image size / 4096, read/prog size 128, cache 512, lookahead 128, block
      cycles 512, name_max 64 = CONFIG_LITTLEFS_OBJ_NAME_LEN), then checks
      that it holds exactly FOLDER's files and directories, every file byte
      for byte. Prints a JSON summary; exits 1 on any difference.

  littlefs_esp.py create FOLDER IMAGE SIZE DISK_VERSION NAME_MAX
      Writes FOLDER into a fresh image of SIZE bytes (block size 4096) at
      DISK_VERSION ("2.0" or "2.1") with NAME_MAX. (littlefs-python's own
      `create` command always writes its default version, 2.1.)
"""

import json
import os
import sys

import littlefs

BLOCK_SIZE = 4096


def esp_littlefs(block_count, buffer=None):
    fs = littlefs.LittleFS(
        block_size=BLOCK_SIZE,
        block_count=block_count,
        read_size=128,
        prog_size=128,
        cache_size=512,
        lookahead_size=128,
        block_cycles=512,
        name_max=64,
        mount=False,
    )
    if buffer is not None:
        fs.context.buffer[:] = buffer
    return fs


def walk_image(fs):
    files, dirs = {}, set()
    for root, dnames, fnames in fs.walk("/"):
        base = root.rstrip("/")
        for d in dnames:
            dirs.add(f"{base}/{d}")
        for f in fnames:
            with fs.open(f"{base}/{f}", "rb") as fh:
                files[f"{base}/{f}"] = fh.read()
    return files, dirs


def walk_folder(folder):
    files, dirs = {}, set()
    for root, dnames, fnames in os.walk(folder):
        rel = os.path.relpath(root, folder).replace(os.sep, "/")
        base = "" if rel == "." else "/" + rel
        for d in dnames:
            dirs.add(f"{base}/{d}")
        for f in fnames:
            with open(os.path.join(root, f), "rb") as fh:
                files[f"{base}/{f}"] = fh.read()
    return files, dirs


def check(image_path, folder):
    data = open(image_path, "rb").read()
    if len(data) % BLOCK_SIZE:
        sys.exit(f"{image_path}: {len(data)} bytes is not a multiple of {BLOCK_SIZE}")
    fs = esp_littlefs(len(data) // BLOCK_SIZE, data)
    fs.mount()  # raises LittleFSError, exit 1 with a traceback, if it refuses
    st = fs.fs_stat()
    got_files, got_dirs = walk_image(fs)
    want_files, want_dirs = walk_folder(folder)
    problems = []
    for p in sorted(set(want_files) | set(got_files)):
        if p not in got_files:
            problems.append(f"missing file {p}")
        elif p not in want_files:
            problems.append(f"unexpected file {p}")
        elif got_files[p] != want_files[p]:
            problems.append(f"{p}: {len(got_files[p])} bytes differ from the folder's {len(want_files[p])}")
    if got_dirs != want_dirs:
        problems.append(f"directories {sorted(got_dirs)} != {sorted(want_dirs)}")
    print(json.dumps({
        "disk_version": st.disk_version,
        "block_size": st.block_size,
        "block_count": st.block_count,
        "name_max": st.name_max,
        "files": len(got_files),
        "dirs": len(got_dirs),
        "bytes": sum(len(v) for v in got_files.values()),
        "problems": problems,
    }))
    sys.exit(1 if problems else 0)


def create(folder, image_path, size, version, name_max):
    major, minor = (int(x) for x in version.split("."))
    fs = littlefs.LittleFS(
        block_size=BLOCK_SIZE,
        block_count=int(size) // BLOCK_SIZE,
        name_max=int(name_max),
        disk_version=(major << 16) | minor,
    )
    files, dirs = walk_folder(folder)
    for d in sorted(dirs):
        fs.makedirs(d, exist_ok=True)
    for p, b in sorted(files.items()):
        with fs.open(p, "wb") as fh:
            fh.write(b)
    fs.unmount()
    with open(image_path, "wb") as out:
        out.write(fs.context.buffer)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 7 and sys.argv[1] == "create":
        create(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
