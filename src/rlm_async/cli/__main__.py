"""``python -m rlm_async.cli``: the ``rlm-async`` command without its script on ``PATH``."""

import sys

from rlm_async.cli._main import main

sys.exit(main())
