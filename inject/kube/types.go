package kube

// Container is the subset of core/v1 Container written for the sidecar
// (k8s.io/api/core/v1/types.go, type Container).
type Container struct {
	Name            string          `json:"name" yaml:"name"`
	Image           string          `json:"image" yaml:"image"`
	Args            []string        `json:"args" yaml:"args"`
	Env             []EnvVar        `json:"env" yaml:"env"`
	Ports           []ContainerPort `json:"ports" yaml:"ports"`
	Resources       Resources       `json:"resources" yaml:"resources"`
	RestartPolicy   string          `json:"restartPolicy,omitempty" yaml:"restartPolicy,omitempty"`
	StartupProbe    Probe           `json:"startupProbe" yaml:"startupProbe"`
	ReadinessProbe  Probe           `json:"readinessProbe" yaml:"readinessProbe"`
	LivenessProbe   Probe           `json:"livenessProbe" yaml:"livenessProbe"`
	SecurityContext SecurityContext `json:"securityContext" yaml:"securityContext"`
}

// EnvVar is core/v1 EnvVar.
type EnvVar struct {
	Name      string        `json:"name" yaml:"name"`
	Value     string        `json:"value,omitempty" yaml:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty" yaml:"valueFrom,omitempty"`
}

// EnvVarSource is core/v1 EnvVarSource (fieldRef and secretKeyRef only).
type EnvVarSource struct {
	FieldRef     *ObjectFieldSelector `json:"fieldRef,omitempty" yaml:"fieldRef,omitempty"`
	SecretKeyRef *SecretKeySelector   `json:"secretKeyRef,omitempty" yaml:"secretKeyRef,omitempty"`
}

// ObjectFieldSelector is core/v1 ObjectFieldSelector (the downward API).
type ObjectFieldSelector struct {
	FieldPath string `json:"fieldPath" yaml:"fieldPath"`
}

// SecretKeySelector is core/v1 SecretKeySelector.
type SecretKeySelector struct {
	Name string `json:"name" yaml:"name"`
	Key  string `json:"key" yaml:"key"`
}

// ContainerPort is core/v1 ContainerPort.
type ContainerPort struct {
	Name          string `json:"name" yaml:"name"`
	ContainerPort int    `json:"containerPort" yaml:"containerPort"`
}

// Resources is core/v1 ResourceRequirements.
type Resources struct {
	Requests *ResourceList `json:"requests,omitempty" yaml:"requests,omitempty"`
	Limits   *ResourceList `json:"limits,omitempty" yaml:"limits,omitempty"`
}

// ResourceList is core/v1 ResourceList with its two common keys.
type ResourceList struct {
	CPU    string `json:"cpu,omitempty" yaml:"cpu,omitempty"`
	Memory string `json:"memory,omitempty" yaml:"memory,omitempty"`
}

// Probe is core/v1 Probe with an exec handler.
type Probe struct {
	Exec             ExecAction `json:"exec" yaml:"exec"`
	PeriodSeconds    int        `json:"periodSeconds" yaml:"periodSeconds"`
	TimeoutSeconds   int        `json:"timeoutSeconds" yaml:"timeoutSeconds"`
	FailureThreshold int        `json:"failureThreshold" yaml:"failureThreshold"`
}

// ExecAction is core/v1 ExecAction.
type ExecAction struct {
	Command []string `json:"command" yaml:"command"`
}

// SecurityContext is core/v1 SecurityContext.
type SecurityContext struct {
	RunAsNonRoot             bool           `json:"runAsNonRoot" yaml:"runAsNonRoot"`
	RunAsUser                int64          `json:"runAsUser" yaml:"runAsUser"`
	RunAsGroup               int64          `json:"runAsGroup" yaml:"runAsGroup"`
	ReadOnlyRootFilesystem   bool           `json:"readOnlyRootFilesystem" yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation bool           `json:"allowPrivilegeEscalation" yaml:"allowPrivilegeEscalation"`
	Capabilities             Capabilities   `json:"capabilities" yaml:"capabilities"`
	SeccompProfile           SeccompProfile `json:"seccompProfile" yaml:"seccompProfile"`
}

// Capabilities is core/v1 Capabilities.
type Capabilities struct {
	Drop []string `json:"drop" yaml:"drop"`
}

// SeccompProfile is core/v1 SeccompProfile.
type SeccompProfile struct {
	Type string `json:"type" yaml:"type"`
}

// Operation is one RFC 6902 JSON Patch operation, as an admission
// response carries them (patchType JSONPatch).
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}
