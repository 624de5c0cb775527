"""After deploy: sampled features, drift statistics, metrics, rollout gates.

Its names load on first use (lazy_loader reads them from `__init__.pyi`): the operator
commands import this package and should not pay for what they do not run.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
