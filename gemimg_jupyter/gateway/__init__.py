"""The ToAPIs client: what crosses the network to the gateway.

================  ================================================================
``client``        :class:`ToAPIsClient`: upload, submit, status, models
``transport``     the pooled HTTP session, retries with backoff, the rate gate
``download``      streamed, deadline-bound, checked downloads of result images
``parse``         every answer dialect read into a :class:`TaskStatus`
``http_errors``   HTTP answers mapped onto the error tree
``references``    reference URLs checked (HEAD / ranged GET) before anything is paid
================  ================================================================
"""
