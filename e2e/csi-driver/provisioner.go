package main

import (
	"context"
	"fmt"
	"log"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const (
	// provisionedBy marks the PVs this driver made, as external-provisioner does.
	provisionedBy = "pv.kubernetes.io/provisioned-by"
	// selectedNode is set by the scheduler on a WaitForFirstConsumer PVC.
	selectedNode = "volume.kubernetes.io/selected-node"
	// resync makes a missed event (a StorageClass made after its PVC, a
	// clone source bound late) cost at most this long.
	resync = 10 * time.Second
)

var (
	volumeSnapshots        = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	volumeSnapshotContents = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

// work is one object to look at: a PVC ("claim", namespace/name) or a PV
// ("volume", name).
type work struct {
	kind string
	key  string
}

// provisioner does external-provisioner's job for this driver's
// StorageClasses: a PV for each pending PVC (empty, a clone of a PVC, or a
// restore of a VolumeSnapshot), and deletion of released PVs whose reclaim
// policy is Delete. PVCs whose dataSourceRef names another kind are left to
// their volume populator, as external-provisioner leaves them.
type provisioner struct {
	cfg     config
	store   *store
	client  kubernetes.Interface
	dynamic dynamic.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
	queue   workqueue.TypedRateLimitingInterface[work]
	factory informers.SharedInformerFactory
}

func newProvisioner(restConfig *rest.Config, cfg config, store *store) (*provisioner, error) {
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, resync)
	p := &provisioner{
		cfg:     cfg,
		store:   store,
		client:  client,
		dynamic: dyn,
		claims:  factory.Core().V1().PersistentVolumeClaims().Lister(),
		volumes: factory.Core().V1().PersistentVolumes().Lister(),
		classes: factory.Storage().V1().StorageClasses().Lister(),
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[work]()),
		factory: factory,
	}
	enqueue := func(kind string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				p.queue.Add(work{kind: kind, key: key})
			}
		}
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    add,
			UpdateFunc: func(_, obj any) { add(obj) },
		}
	}
	if _, err := factory.Core().V1().PersistentVolumeClaims().Informer().AddEventHandler(enqueue("claim")); err != nil {
		return nil, err
	}
	if _, err := factory.Core().V1().PersistentVolumes().Informer().AddEventHandler(enqueue("volume")); err != nil {
		return nil, err
	}
	factory.Storage().V1().StorageClasses().Informer()
	return p, nil
}

// run processes work until ctx ends.
func (p *provisioner) run(ctx context.Context) {
	p.factory.Start(ctx.Done())
	p.factory.WaitForCacheSync(ctx.Done())
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	for {
		item, shutdown := p.queue.Get()
		if shutdown {
			return
		}
		var err error
		if item.kind == "claim" {
			err = p.syncClaim(ctx, item.key)
		} else {
			err = p.syncVolume(ctx, item.key)
		}
		if err != nil {
			log.Printf("%s %s: %v (will retry)", item.kind, item.key, err)
			p.queue.AddRateLimited(item)
		} else {
			p.queue.Forget(item)
		}
		p.queue.Done(item)
	}
}

func (p *provisioner) syncClaim(ctx context.Context, key string) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	claim, err := p.claims.PersistentVolumeClaims(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil || claim.Spec.StorageClassName == nil {
		return nil
	}
	class, err := p.classes.Get(*claim.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil // not ours, or its class does not exist (yet)
	} else if err != nil {
		return err
	}
	if class.Provisioner != p.cfg.name {
		return nil
	}
	if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		if node := claim.Annotations[selectedNode]; node == "" {
			return nil // the scheduler has not picked a node yet
		} else if node != p.cfg.nodeName {
			return nil // another node's driver serves it
		}
	}
	from, ours, err := p.source(ctx, claim)
	if err != nil || !ours {
		return err
	}
	volumeName := "pvc-" + string(claim.UID)
	if _, err := p.volumes.Get(volumeName); err == nil {
		return nil
	}
	request, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return fmt.Errorf("no storage request")
	}
	block := claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock
	if err := p.store.createVolume(volumeName, request.Value(), block, from); err != nil {
		return err
	}
	if _, err := p.client.CoreV1().PersistentVolumes().Create(ctx, p.persistentVolume(volumeName, claim, class, request), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	log.Printf("provisioned %s for PVC %s (block=%v, clone of %q, restore of %q)", volumeName, key, block, from.volume, from.snapshot)
	return nil
}

// source resolves what claim's volume starts as a copy of. ours is false
// for a data source of another kind, which a volume populator fills.
func (p *provisioner) source(ctx context.Context, claim *corev1.PersistentVolumeClaim) (from source, ours bool, err error) {
	var group, kind, name string
	switch {
	case claim.Spec.DataSourceRef != nil:
		ref := claim.Spec.DataSourceRef
		if ref.APIGroup != nil {
			group = *ref.APIGroup
		}
		if ref.Namespace != nil && *ref.Namespace != "" && *ref.Namespace != claim.Namespace {
			return from, false, nil // cross-namespace sources need a populator
		}
		kind, name = ref.Kind, ref.Name
	case claim.Spec.DataSource != nil:
		ref := claim.Spec.DataSource
		if ref.APIGroup != nil {
			group = *ref.APIGroup
		}
		kind, name = ref.Kind, ref.Name
	default:
		return from, true, nil
	}
	switch {
	case group == "" && kind == "PersistentVolumeClaim":
		sourceClaim, err := p.claims.PersistentVolumeClaims(claim.Namespace).Get(name)
		if err != nil {
			return from, true, fmt.Errorf("clone source PVC %s: %w", name, err)
		}
		if sourceClaim.Spec.VolumeName == "" {
			return from, true, fmt.Errorf("clone source PVC %s is not bound yet", name)
		}
		volume, err := p.volumes.Get(sourceClaim.Spec.VolumeName)
		if err != nil {
			return from, true, err
		}
		if volume.Spec.CSI == nil || volume.Spec.CSI.Driver != p.cfg.name {
			return from, true, fmt.Errorf("clone source PVC %s is not a volume of %s", name, p.cfg.name)
		}
		from.volume = volume.Spec.CSI.VolumeHandle
	case group == volumeSnapshots.Group && kind == "VolumeSnapshot":
		snapshot, err := p.dynamic.Resource(volumeSnapshots).Namespace(claim.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return from, true, fmt.Errorf("VolumeSnapshot %s: %w", name, err)
		}
		ready, _, _ := unstructured.NestedBool(snapshot.Object, "status", "readyToUse")
		contentName, _, _ := unstructured.NestedString(snapshot.Object, "status", "boundVolumeSnapshotContentName")
		if !ready || contentName == "" {
			return from, true, fmt.Errorf("VolumeSnapshot %s is not ready yet", name)
		}
		content, err := p.dynamic.Resource(volumeSnapshotContents).Get(ctx, contentName, metav1.GetOptions{})
		if err != nil {
			return from, true, err
		}
		driver, _, _ := unstructured.NestedString(content.Object, "spec", "driver")
		handle, _, _ := unstructured.NestedString(content.Object, "status", "snapshotHandle")
		if driver != p.cfg.name || handle == "" {
			return from, true, fmt.Errorf("VolumeSnapshot %s is not a snapshot of %s", name, p.cfg.name)
		}
		from.snapshot = handle
	default:
		return from, false, nil
	}
	return from, true, nil
}

func (p *provisioner) persistentVolume(name string, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, capacity resource.Quantity) *corev1.PersistentVolume {
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedBy: p.cfg.name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes: claim.Spec.AccessModes,
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1",
				Kind:       "PersistentVolumeClaim",
				Namespace:  claim.Namespace,
				Name:       claim.Name,
				UID:        claim.UID,
			},
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			VolumeMode:                    claim.Spec.VolumeMode,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{Driver: p.cfg.name, VolumeHandle: name},
			},
			// The data lives on this node only.
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key:      corev1.LabelHostname,
					Operator: corev1.NodeSelectorOpIn,
					Values:   []string{p.cfg.nodeName},
				}}}},
			}},
		},
	}
}

// syncVolume deletes a released PV of this driver whose reclaim policy is
// Delete, with its data.
func (p *provisioner) syncVolume(ctx context.Context, name string) error {
	volume, err := p.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	if volume.Annotations[provisionedBy] != p.cfg.name ||
		volume.Status.Phase != corev1.VolumeReleased ||
		volume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		volume.Spec.CSI == nil {
		return nil
	}
	if err := p.store.deleteVolume(volume.Spec.CSI.VolumeHandle); err != nil {
		return err
	}
	err = p.client.CoreV1().PersistentVolumes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.Printf("deleted released %s", name)
	return nil
}
