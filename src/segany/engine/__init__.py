"""The data engine at dataset scale: automatic labelling (here or on Ray), its statistics, and
model-in-the-loop rounds (fine-tune on accumulated annotations, keep the model only if it improves).

Nothing heavy is imported here; Ray only when a Ray run starts.
"""
