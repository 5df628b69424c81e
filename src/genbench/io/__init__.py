"""File and path safety for everything genbench reads and writes, below every other layer but ``errors``.

- :mod:`genbench.io.files`: atomic writes (checkpoints, histories, banks, metrics, figures), JSON lines,
  hashes, writable folders and exclusive locks;
- :mod:`genbench.io.paths`: user input that becomes a path (names, roots, deletion, regular files);
- :mod:`genbench.io.limits`: the memory cap and bounded network probes.

Callers import the names from ``genbench.io``.
"""

from genbench.io.files import (append_jsonl, atomic_savez, atomic_torch_save, atomic_write_bytes,
                               atomic_write_json, atomic_write_text, check_writable_dir, exclusive_lock,
                               read_jsonl, sha256_bytes, sha256_file)
from genbench.io.limits import (MEMORY_ENV, PROBE_TIMEOUT, PROBE_TRIES, PROBE_WAIT, check_memory, check_url,
                                human_bytes, memory_cap, probe_tcp)
from genbench.io.paths import (NAME_MAX_BYTES, inside, name_problem, own_folder, regular_file, remove_inside,
                               remove_temps, safe_name, shown)

__all__ = ["append_jsonl", "atomic_savez", "atomic_torch_save", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "check_writable_dir", "exclusive_lock", "read_jsonl", "sha256_bytes", "sha256_file",
           "MEMORY_ENV", "PROBE_TIMEOUT", "PROBE_TRIES", "PROBE_WAIT", "check_memory", "check_url", "human_bytes",
           "memory_cap", "probe_tcp", "NAME_MAX_BYTES", "inside", "name_problem", "own_folder", "regular_file",
           "remove_inside", "remove_temps", "safe_name", "shown"]
