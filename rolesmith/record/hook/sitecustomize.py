"""Injected into every Python process a ``rolesmith record`` child starts (via ``PYTHONPATH``).

It must cost nothing for processes that never touch botocore, so it only installs an import hook
that patches ``botocore.session.Session`` when (and if) botocore is imported, then chains to the
``sitecustomize`` this one shadows.
"""

import os
import sys


def _chain() -> None:
    # Shadowed sitecustomize (the venv's or the distro's): import it with our directory hidden.
    here = os.path.dirname(os.path.abspath(__file__))
    mine = sys.modules.pop("sitecustomize", None)
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import importlib

        try:
            importlib.import_module("sitecustomize")
        except ImportError:
            pass
    finally:
        sys.path[:] = saved
        if mine is not None:
            sys.modules.setdefault("sitecustomize", mine)


if os.environ.get("ROLESMITH_RECORD_ADDR"):
    try:
        import _rolesmith_hook

        _rolesmith_hook.install()
    except Exception as err:  # never break the workload because recording failed
        sys.stderr.write(f"rolesmith: hook not installed: {err}\n")
_chain()
