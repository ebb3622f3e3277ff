package metrics

// The fixed label value sets. Each is indexed by the matching *Index
// function; index 0 of flags is "no flag".
var (
	methods  = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", Other}
	statuses = [...]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx", Other}
	flags    = [...]string{NoFlag, "UH", "UF", "UT", "UC", "DC", "DI", "BR", "UO", "OM", "SI", Other}
)

const (
	numMethods  = len(methods)
	numStatuses = len(statuses)
	numFlags    = len(flags)
)

// NoFlag is the response_flag label of requests without a response flag
// (Envoy and Istio write "-" too; an empty label value would read as an
// absent label in PromQL).
const NoFlag = "-"

// MethodClass returns the method label of an HTTP method: the method
// itself if it is one of the nine standard methods (case-sensitive, as
// methods are), else Other.
func MethodClass(method string) string { return methods[methodIndex(method)] }

// StatusClass returns the status_class label of a response status: "none"
// for 0 or less (no response was sent), "1xx" to "5xx", else Other.
func StatusClass(status int) string { return statuses[statusIndex(status)] }

// FlagClass returns the response_flag label of a response flag: NoFlag for
// "", the flag itself for UH, UF, UT, UC, DC, DI, BR and UO, else Other
// (including comma-joined combinations).
func FlagClass(flag string) string { return flags[flagIndex(flag)] }

func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	case "CONNECT":
		return 7
	case "TRACE":
		return 8
	}
	return 9
}

func statusIndex(s int) int {
	switch {
	case s <= 0:
		return 0
	case s >= 100 && s < 600:
		return s / 100
	}
	return 6
}

func flagIndex(f string) int {
	switch f {
	case "":
		return 0
	case "UH":
		return 1
	case "UF":
		return 2
	case "UT":
		return 3
	case "UC":
		return 4
	case "DC":
		return 5
	case "DI":
		return 6
	case "BR":
		return 7
	case "UO":
		return 8
	case "OM":
		return 9
	case "SI":
		return 10
	}
	return 11
}
