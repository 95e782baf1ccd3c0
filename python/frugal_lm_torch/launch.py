"""torchrun (torch.distributed.run), with one compatibility fix: on Python 3.11, PyTorch 1.13's
Std.from_str('0') returns None (the zero flag is no longer a member of the IntFlag), which makes
every launch fail; the default redirect setting is mapped back to Std.NONE."""
import sys

from torch.distributed.elastic.multiprocessing import api
from torch.distributed import run

_orig = api.Std.from_str


def _from_str(vm):
    r = _orig(vm)
    if r is None:
        return api.Std(int(vm)) if vm.isdigit() and int(vm) != 0 else api.Std.NONE
    if isinstance(r, dict):
        return {k: (v if v is not None else api.Std.NONE) for k, v in r.items()}
    return r


if api.Std.from_str('0') is None:
    api.Std.from_str = staticmethod(_from_str)

if __name__ == '__main__':
    sys.exit(run.main())
