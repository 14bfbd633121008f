// Package limitranger bounds object size: Admit defaults missing fields and
// Validate rejects configmaps whose data exceeds the limit.
package limitranger

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/kubernetes/pkg/apis/core"
)

// PluginName is the name the plugin is registered under.
const PluginName = "LimitRanger"

// MaxDataBytes is the largest total size of a ConfigMap's keys and values.
const MaxDataBytes = 1 << 20

// LimitRanger handles create and update only.
type LimitRanger struct {
	*admission.Handler
}

// NewLimitRanger returns the plugin.
func NewLimitRanger() *LimitRanger {
	return &LimitRanger{Handler: admission.NewHandler(admission.Create, admission.Update)}
}

// Admit gives every configmap a non-nil data map so responses are uniform.
func (l *LimitRanger) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	if cm, ok := a.GetObject().(*core.ConfigMap); ok && cm.Data == nil {
		cm.Data = map[string]string{}
	}
	return nil
}

// Validate rejects oversized configmaps with 403, as a LimitRange would.
func (l *LimitRanger) Validate(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	cm, ok := a.GetObject().(*core.ConfigMap)
	if !ok {
		return nil
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	if size > MaxDataBytes {
		return apierrors.NewForbidden(a.GetResource(), a.GetName(),
			fmt.Errorf("data is %d bytes, more than the limit of %d", size, MaxDataBytes))
	}
	return nil
}
