"""The annotation app: a local web server where people click masks with SAM and save them.

Layers, each depending only on those listed before it:

* ``storage``: the SQLite database of images, annotations and annotator sessions.
* ``catalog``: the images folder (scanning it, image sizes, paths that cannot leave it).
* ``masks``: checking masks that arrive over the network, and the numbers derived from a mask.
* ``embeddings``: the per-image embedding cache on disk, recent predictions, the background queue.
* ``transfer``: exporting accepted annotations with :mod:`segany.formats` writers; importing proposals.
* ``service``: what the routes do, without HTTP (errors carry their HTTP status).
* ``api_models`` and ``middleware``: the JSON shapes of the API; the token and body-size guards.
* ``server``: :func:`segany.app.server.create_app`, the FastAPI application factory.

Needs the ``segany[app]`` extra (FastAPI, uvicorn). Nothing here runs on import.
"""
