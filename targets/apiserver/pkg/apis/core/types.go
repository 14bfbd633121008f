// Package core holds the one API type the test target serves: a ConfigMap.
package core

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ConfigMap is a namespaced bag of strings.
type ConfigMap struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Data              map[string]string `json:"data,omitempty"`
}

// ConfigMapList is the response of a list request.
type ConfigMapList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ConfigMap `json:"items"`
}

// SetNamespace lets handlers default the namespace from the URL.
func (c *ConfigMap) SetNamespace(ns string) { c.Namespace = ns }

func (c *ConfigMap) DeepCopyObject() runtime.Object {
	out := *c
	if c.Data != nil {
		out.Data = make(map[string]string, len(c.Data))
		for k, v := range c.Data {
			out.Data[k] = v
		}
	}
	return &out
}

func (l *ConfigMapList) DeepCopyObject() runtime.Object {
	out := *l
	out.Items = make([]ConfigMap, len(l.Items))
	for i := range l.Items {
		out.Items[i] = *l.Items[i].DeepCopyObject().(*ConfigMap)
	}
	return &out
}

func (l *ConfigMapList) NewItem() runtime.Object { return &ConfigMap{} }

func (l *ConfigMapList) SetItems(items []runtime.Object) error {
	l.Items = make([]ConfigMap, 0, len(items))
	for _, item := range items {
		cm, ok := item.(*ConfigMap)
		if !ok {
			return fmt.Errorf("ConfigMapList cannot hold %T", item)
		}
		l.Items = append(l.Items, *cm)
	}
	return nil
}

func (l *ConfigMapList) SetResourceVersion(rv string) { l.ResourceVersion = rv }

// NewConfigMap and NewConfigMapList are the registry's constructors; they
// stamp the kind so stored and returned JSON is self-describing.
func NewConfigMap() runtime.Object {
	return &ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}}
}

func NewConfigMapList() runtime.Object {
	return &ConfigMapList{TypeMeta: metav1.TypeMeta{Kind: "ConfigMapList", APIVersion: "v1"}, Items: []ConfigMap{}}
}
