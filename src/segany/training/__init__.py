"""Training SAM with the paper's recipe, and evaluating promptable segmentation.

Modules: ``datasets`` and ``copy_paste`` (what to train on), ``synthetic`` (generated scenes), ``samples``
and ``loader`` (what one step sees), ``clicks`` and ``interactive`` (the simulated interaction and its
loss), ``losses``, ``optim``, ``state`` (resumable checkpoints), ``distributed``, ``trainer`` (the loop),
``grow`` (deepening a trained encoder), ``config`` (the TOML file), ``text_config`` (text prompts: the
``[text]`` section, the small encoder's training and evaluation), ``evaluate``, ``eval_prompts`` and
``eval_config`` (``segany eval``). This package imports nothing on its own, so ``import segany.training``
stays cheap.
"""
