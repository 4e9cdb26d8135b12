"""The greenroom command-line client (see the client issue); it speaks only docs/protocol.md."""
