"""``python -m genbench.cli``: the ``genbench`` command (as under torchrun and accelerate launch)."""

from genbench.cli import main

if __name__ == "__main__":
    main()
