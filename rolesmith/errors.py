"""The one exception type the CLI turns into a clean one-line error.

Each stage defines its own subclasses beside the code that raises them; this module only holds the
base so that ``cli.py`` can catch every user-facing error in one place.
"""

from __future__ import annotations


class RolesmithError(Exception):
    """An error the user can act on.

    ``str(err)`` is one line that names the input (file and record index where there is one) and
    the fix. ``exit_code`` is what the CLI exits with: 2 for bad input, 1 otherwise.
    """

    exit_code: int = 1
