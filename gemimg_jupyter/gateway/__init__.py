"""The ToAPIs client: what crosses the network to the gateway.

================  ================================================================
``client``        :class:`ToAPIsClient`: upload, submit, status, models; it *has* the two below
``transport``     :class:`HTTPTransport`: the pooled session, retries with backoff, the rate gate
``download``      :class:`Downloader`: streamed, deadline-bound, checked downloads of result images
``parse``         every answer dialect read into a :class:`TaskStatus`
``http_errors``   HTTP answers mapped onto the error tree
``references``    reference URLs checked (HEAD / ranged GET) before anything is paid
================  ================================================================
"""
