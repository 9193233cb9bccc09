"""write_log.py SRC DST PARTS PAUSE: write SRC into DST the way a running program writes its log.

SRC is cut after each line end (``\\n``, and tqdm's ``\\r``) into PARTS parts of about the same
number of pieces; each part is appended and flushed, then the writer pauses PAUSE seconds. The
launcher e2e test runs this as a SLURM job: the cluster is this machine, so jobmon follows DST
while the job writes it.
"""
import re
import sys
import time

src, dst, parts, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(src, "rb") as f:
    pieces = re.split(rb"(?<=[\r\n])", f.read())
size = -(-len(pieces) // parts)
with open(dst, "wb") as out:
    for start in range(0, len(pieces), size):
        out.write(b"".join(pieces[start:start + size]))
        out.flush()
        time.sleep(pause)
