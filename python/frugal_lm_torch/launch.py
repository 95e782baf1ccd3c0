"""torchrun (torch.distributed.run), with one compatibility fix: on Python 3.11, PyTorch 1.13's
Std.from_str('0') returns None (the zero flag is no longer a member of the IntFlag), which makes
every launch fail; the default redirect setting is mapped back to Std.NONE."""
import sys

from torch.distributed import run

try:
    from torch.distributed.elastic.multiprocessing import api
    _orig = api.Std.from_str
except (ImportError, AttributeError):  # a PyTorch whose launcher moved this: nothing to fix
    api = None


def _from_str(vm):
    r = _orig(vm)
    if r is None:
        return api.Std(int(vm)) if vm.isdigit() and int(vm) != 0 else api.Std.NONE
    if isinstance(r, dict):
        return {k: (v if v is not None else api.Std.NONE) for k, v in r.items()}
    return r


if api is not None and api.Std.from_str('0') is None:
    api.Std.from_str = staticmethod(_from_str)

if __name__ == '__main__':
    sys.exit(run.main())
