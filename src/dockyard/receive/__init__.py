"""Receiving ``git push``: over smart HTTP (``git http-backend``) and SSH (asyncssh).

Both run the real ``git-receive-pack``. Its pre-receive hook (:mod:`.hook`) picks the
deploy branch (:mod:`.branches`), archives the pushed commit, and hands it to the server's
build service over a one-time push URL, relaying the build's output as ``remote:`` lines.
A failed build fails the hook, so git rejects the push.
"""
