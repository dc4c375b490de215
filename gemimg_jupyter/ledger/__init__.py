"""The SQLite ledger: who pays, what was made, and the files it points to.

=============  ===================================================================
``store``      :class:`Store`: the ledger, the cache, image files written atomically
``schema``     opening, self-check, schema and migrations, :class:`LedgerRow`
``leases``     owners and their heartbeat
``claims``     who pays: claim, adopt, take over, orphans
``queries``    rows, cache keys, history, totals
``files``      safe file names and atomic writes
``picks``      the picks (stars and notes) kept beside the ledger
=============  ===================================================================
"""
