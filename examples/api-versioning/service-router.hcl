# /v2/... and X-API-Version: 2 go to v2, /v1/... to v1; the version prefix
# is removed before the request reaches the application.
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match { HTTP { PathPrefix = "/v2/" } }
    Destination {
      ServiceSubset   = "v2"
      PrefixRewrite   = "/"
      RequestHeaders  { Add = { "X-Api-Route" = "v2-path" } }
      ResponseHeaders { Set = { "X-Served-Version" = "v2" } }
    }
  },
  {
    Match { HTTP { Header = [{ Name = "X-API-Version", Exact = "2" }] } }
    Destination { ServiceSubset = "v2" }
  },
  {
    Match { HTTP { PathPrefix = "/v1/" } }
    Destination {
      ServiceSubset = "v1"
      PrefixRewrite = "/"
    }
  },
  {
    # Idempotent requests answered with a 5xx are retried (twice at most,
    # on another instance when there is one).
    Match { HTTP { PathPrefix = "/retried/" } }
    Destination {
      ServiceSubset = "v1"
      PrefixRewrite = "/"
      NumRetries    = 2
      RetryOn       = ["5xx"]
    }
  },
  {
    Match { HTTP { PathPrefix = "/sleep" } }
    Destination {
      ServiceSubset  = "v1"
      RequestTimeout = "300ms"
    }
  },
]
