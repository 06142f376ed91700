"""`python -m flops_fit_torch.bench`: the benchmark's command line (see the package)."""

import sys

from . import main

sys.exit(main())
