"""Renders a bench template: each @NAME@ placeholder replaced by the environment variable NAME.

    python3 bench/render.py TEMPLATE OUT NAME...

Fails when a placeholder is left unreplaced.
"""
import os
import re
import sys

template, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(template).read()
for name in names:
    text = text.replace("@" + name + "@", os.environ[name])
left = re.findall(r"@[A-Z_]+@", text)
if left:
    sys.exit(f"{template}: unreplaced {sorted(set(left))}")
open(out, "w").write(text)
