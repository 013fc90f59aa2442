"""``python -m binderlab.fingerprint PATH``: print what the fingerprint of a checkout is made of."""

from binderlab.fingerprint.buildpacks import main

main()
