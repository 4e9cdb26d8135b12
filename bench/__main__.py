"""`python -m bench`: gevent patches first, because the load generator is gevent too."""

from gevent import monkey

monkey.patch_all()

from bench.cli import main  # noqa: E402

main()
