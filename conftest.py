"""pytest, for the whole checkout: where triton is not installed (it ships with torch's Linux wheels only), the Triton
kernel modules are not collected for their doctests (they import triton; nothing else imports them there)."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("triton") else ["interpolators/_triton_sampling.py", "interpolators/*/triton.py"]
