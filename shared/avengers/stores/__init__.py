"""What the router keeps beside itself: feedback (ratings, their stores and the client,
``stores.feedback``), conversations (``stores.conversations``), atomic router snapshots
(``stores.snapshot``), every replica following the store's rating log (``stores.fleet``) and
store calls kept bounded and off the answer path (``stores.guard``)."""
