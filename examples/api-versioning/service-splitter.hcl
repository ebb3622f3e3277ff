# Everything no route matched: 90% to v1, a 10% canary to v2, marked so
# the application (and its logs) can tell.
Kind = "service-splitter"
Name = "web"
Splits = [
  {
    Weight        = 90
    ServiceSubset = "v1"
  },
  {
    Weight         = 10
    ServiceSubset  = "v2"
    RequestHeaders { Set = { "X-Canary" = "true" } }
  },
]
