"""`python -m rcompiler.tune`: the tuning command (implemented in rcompiler.cli).

The Python API is the function `rcompiler.tune(...)`; import this module only to run it.
"""
if __name__ == "__main__":
    from rcompiler.cli import main

    raise SystemExit(main())
