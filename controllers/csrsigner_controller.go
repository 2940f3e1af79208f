package controllers

import (
	"context"
	"fmt"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"apisnoop.dev/kube-apisnoop/internal/certs/issuer"
	"apisnoop.dev/kube-apisnoop/internal/certs/signer"
)

// Condition reasons the signer writes on CertificateSigningRequests.
const (
	ReasonPolicyApproved = "ApisnoopPolicyApproved"
	ReasonPolicyDenied   = "ApisnoopPolicyDenied"
	ReasonSignFailed     = "ApisnoopSignFailed"
)

// CSRSignerReconciler is the signer for signer.ProxySignerName: it approves
// the requests its policy allows, denies the others with the reason, and
// signs approved requests with the operator's CA. Requests for other signers
// are never touched.
type CSRSignerReconciler struct {
	client.Client
	// CA returns the signing CA (kept in a Secret of the operator's
	// namespace).
	CA func(ctx context.Context) (*signer.CA, error)
	// Requester is the only user whose requests are approved: the
	// operator's own identity.
	Requester string
	// Names gives the names a certificate may carry; the kubernetes
	// Service's address is looked up for each request.
	Names *issuer.ProxyNames
}

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval;certificatesigningrequests/status,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=snoop.apisnoop.dev/proxy,verbs=approve;sign
// +kubebuilder:rbac:groups="",resources=services,verbs=get

// Reconcile moves one request on by a step: approve or deny, then sign.
func (r *CSRSignerReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	csr := &certificatesv1.CertificateSigningRequest{}
	if err := r.Get(ctx, req.NamespacedName, csr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if csr.Spec.SignerName != signer.ProxySignerName || len(csr.Status.Certificate) > 0 ||
		hasCondition(csr, certificatesv1.CertificateDenied) || hasCondition(csr, certificatesv1.CertificateFailed) {
		return ctrl.Result{}, nil
	}
	dnsNames, ips, err := r.Names.Get(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("build signer policy: %w", err)
	}
	policy := signer.ProxyPolicy{Requester: r.Requester, DNSNames: dnsNames, IPs: ips}
	parsed, denied := policy.Check(csr)

	if !hasCondition(csr, certificatesv1.CertificateApproved) {
		cond := certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: ReasonPolicyApproved, Message: "Approved by the apisnoop operator: a proxy serving certificate for the API server's names",
		}
		if denied != nil {
			cond = certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue,
				Reason: ReasonPolicyDenied, Message: denied.Error(),
			}
		}
		cond.LastUpdateTime = metav1.Now()
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		if err := r.SubResource("approval").Update(ctx, csr); err != nil {
			return ctrl.Result{}, fmt.Errorf("update approval: %w", err)
		}
		log.Info("Decided on certificate request", "certificatesigningrequest", klog.KObj(csr), "decision", cond.Type, "reason", cond.Message)
		return ctrl.Result{}, nil
	}

	// Approved, perhaps by someone else: still sign only what the policy
	// allows, and say why not on the request.
	if denied != nil {
		return ctrl.Result{}, r.fail(ctx, csr, "Not signed: "+denied.Error())
	}
	ca, err := r.CA(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("load CA: %w", err)
	}
	validity := issuer.DefaultProxyCertValidity
	if s := csr.Spec.ExpirationSeconds; s != nil && time.Duration(*s)*time.Second < validity {
		validity = time.Duration(*s) * time.Second
	}
	certPEM, err := ca.SignServing(parsed, validity)
	if err != nil {
		return ctrl.Result{}, r.fail(ctx, csr, err.Error())
	}
	csr.Status.Certificate = certPEM
	if err := r.Status().Update(ctx, csr); err != nil {
		return ctrl.Result{}, fmt.Errorf("update certificate: %w", err)
	}
	log.Info("Signed proxy certificate", "certificatesigningrequest", klog.KObj(csr), "validity", validity)
	return ctrl.Result{}, nil
}

// fail marks the request Failed: approved, but this signer will not sign it.
func (r *CSRSignerReconciler) fail(ctx context.Context, csr *certificatesv1.CertificateSigningRequest, message string) error {
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue,
		Reason: ReasonSignFailed, Message: message, LastUpdateTime: metav1.Now(),
	})
	if err := r.Status().Update(ctx, csr); err != nil {
		return fmt.Errorf("mark request failed: %w", err)
	}
	return nil
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// SetupWithManager watches only the requests that name this signer.
func (r *CSRSignerReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ours := predicate.NewPredicateFuncs(func(o client.Object) bool {
		csr, ok := o.(*certificatesv1.CertificateSigningRequest)
		return ok && csr.Spec.SignerName == signer.ProxySignerName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("csrsigner").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(ours)).
		Complete(r)
}
