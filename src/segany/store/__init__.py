"""The annotation store: the SQLite database of images and annotations (:mod:`.storage`) and the images
folder it describes (:mod:`.catalog`). Shared by the annotation app and the data engine, above both of
which it sits; it imports nothing of theirs."""
