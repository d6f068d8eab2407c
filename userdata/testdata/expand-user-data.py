"""Expand a user-data file the way cloud-init does on an instance.

Usage: python3 expand-user-data.py USER-DATA MERGED-CLOUD-CONFIG

Runs cloud-init's own code: UserDataProcessor turns the user-data (plain or
MIME multipart) into its parts, handlers.walk visits them as the init stage
does, and every text/cloud-config part goes through CloudConfigPartHandler,
which merges the parts (honouring their Merge-Type headers) into the one
cloud-config the modules then read. That merged cloud-config is written to
MERGED-CLOUD-CONFIG (for `cloud-init schema --config-file`); a JSON list of
the parts (content type, file name, Merge-Type header, payload) goes to
stdout. Needs the cloud-init Python package (/usr/bin/python3 on Debian).
"""

import json
import sys
import tempfile

from cloudinit import handlers, helpers, safeyaml, user_data
from cloudinit.handlers.cloud_config import CloudConfigPartHandler
from cloudinit.settings import PER_INSTANCE


def main(src, out):
    with open(src, "rb") as f:
        blob = f.read()
    with tempfile.TemporaryDirectory() as tmp:
        paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp})
        msg = user_data.UserDataProcessor(paths).process(blob)
        expand(paths, msg, out)


def expand(paths, msg, out):
    handler = CloudConfigPartHandler(paths)
    handler.handle_part(None, handlers.CONTENT_START, None, None, None, None)
    parts = []

    def visit(_data, filename, payload, headers):
        ctype = headers["Content-Type"]
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        parts.append(
            {
                "content_type": ctype,
                "filename": filename,
                "merge_type": headers.get("Merge-Type", ""),
                "payload": payload,
            }
        )
        if ctype == "text/cloud-config":
            handler.handle_part(
                None, ctype, filename, payload, PER_INSTANCE, headers
            )

    handlers.walk(msg, visit, None)
    if handler.cloud_buf is None:
        sys.exit("no cloud-config part was merged")
    with open(out, "w", encoding="utf-8") as f:
        f.write("#cloud-config\n" + safeyaml.dumps(handler.cloud_buf))
    json.dump(parts, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
