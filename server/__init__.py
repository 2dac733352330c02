"""The online half of clipsearch: a gRPC and HTTP retrieval server (`clipsearch serve`).

Layers, top to bottom: `app` assembles; the faces `grpc/` and `http/` translate;
`pipeline` runs every call the same way; `admission/` decides who may call; `core/`
does the work.
"""
