"""rolesmith: least-privilege AWS policies from what a workload actually does.

Pipeline: record -> trail -> graph -> policies -> render, with explain/converge closing the loop.
Each stage is a subpackage or module of the same name; the CLI in ``rolesmith.cli`` is a thin shell
over the plain-Python functions they export.
"""

__version__ = "0.1.0"
