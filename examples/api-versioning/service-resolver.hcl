# Subsets of web by the version in each instance's service metadata
# (sidecar registrations inherit it). Requests no route names a subset for
# go to v1.
Kind          = "service-resolver"
Name          = "web"
DefaultSubset = "v1"
Subsets = {
  v1 = { Filter = "Service.Meta.version == v1" }
  v2 = { Filter = "Service.Meta.version == v2" }
}
