"""What every layer may import: the settings object and the project's error classes.

Importing it also asks torch, when torch is imported after it, to back large CPU tensors with
transparent huge pages (``THP_MEM_ALLOC_ENABLE``; a value the caller set is kept). Each
full-graph tensor of a training step is freshly mapped memory, and faulting it in 4 KB pages
took more system time than the arithmetic: on the 2-core VM, HGT and MGAT epochs at 100k nodes
run 1.7x faster with 2 MB pages (docs/design.md, "Learning at scale").
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
