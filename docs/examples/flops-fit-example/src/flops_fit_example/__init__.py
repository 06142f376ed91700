"""An example third-party flops-fit plugin.

- trainer `command` (`flops_fit_example.command`): trains each experiment by running an
  external training program as a subprocess, its arguments filled in from the experiment;
- plotter `tokens-per-param` (`flops_fit_example.plotter`): D/N of every run against compute,
  with the fit's D*/N* law;
- `python -m flops_fit_example.toy_train`: a stand-in training program, the trainer's default
  command.

The hook implementations live in `flops_fit_example.plugin`, the module the `flops_fit` entry
point names. This package module imports nothing, so the stand-in program, which Python starts
as a submodule of it, starts in milliseconds.
"""

__version__ = "0.1.0"
