"""What the server does, whatever the transport: batching, encoding, searching, the served index."""
