"""The SQLite ledger: who pays, what was made, and the files it points to.

=============  ===================================================================
``store``      :class:`Store`: the ledger's connection, lock and owner; the cache; image files
``schema``     opening, self-check, the one schema and its migrations, :class:`LedgerRow`
``leases``     live owners, handing rows back, the heartbeat thread
``claims``     who pays: claim, adopt, take over
``queries``    rows, cache keys, history, totals
``files``      safe file names and atomic writes
``picks``      the picks (stars and notes), a table of the ledger
=============  ===================================================================
"""
