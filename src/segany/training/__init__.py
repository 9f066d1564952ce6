"""Training SAM: synthetic scenes, the paper's losses, and (later) the training loop.

Import the submodules directly (``segany.training.losses``, ``segany.training.synthetic``); this
package imports nothing on its own, so ``import segany.training`` stays cheap.
"""
