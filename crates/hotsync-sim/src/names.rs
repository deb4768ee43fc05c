//! Upstream's names: the labels, annotations, conditions and values OKG and Kruise write, spelled as their
//! code spells them. Nothing here comes from the product: where the product spells a name differently,
//! the simulation's spelling is upstream's and the difference shows in the tests.

// ---- OKG: kruise-game apis/v1alpha1 (gameserver_types.go, gameserverset_types.go) ----------------------

/// `GameServerOwnerGssKey`: on every pod template, the Advanced StatefulSet's selector, every GameServer.
pub const OKG_OWNER_GSS: &str = "game.kruise.io/owner-gss";
/// `GameServerStateKey`: the pod label the GameServer controller writes its computed state into.
pub const OKG_GS_STATE: &str = "game.kruise.io/gs-state";
/// `GameServerOpsStateKey` (camel-case `S`, as upstream spells it).
pub const OKG_OPS_STATE: &str = "game.kruise.io/gs-opsState";
/// `GameServerUpdatePriorityKey`: the pod label, and the Advanced StatefulSet's `orderedKey`.
pub const OKG_UPDATE_PRIORITY: &str = "game.kruise.io/gs-update-priority";
/// `GameServerDeletePriorityKey`: `gs-delete-priority`, not `gs-deletion-priority`.
pub const OKG_DELETE_PRIORITY: &str = "game.kruise.io/gs-delete-priority";
/// `GameServerNetworkDisabled`: pod label.
pub const OKG_NETWORK_DISABLED: &str = "game.kruise.io/network-disabled";
/// `GameServerNetworkType`: pod template annotation from `spec.network.networkType`.
pub const OKG_NETWORK_TYPE: &str = "game.kruise.io/network-type";
/// `GameServerNetworkConf`: pod template annotation, the JSON of `spec.network.networkConf`.
pub const OKG_NETWORK_CONF: &str = "game.kruise.io/network-conf";
/// `GameServerNetworkStatus`: pod annotation a network plugin writes.
pub const OKG_NETWORK_STATUS: &str = "game.kruise.io/network-status";
/// `GameServerNetworkTriggerTime`: pod annotation that re-drives the network plugin.
pub const OKG_NETWORK_TRIGGER_TIME: &str = "game.kruise.io/network-trigger-time";
/// `GameServerOpsStateLastChangedTime`: pod annotation.
pub const OKG_OPS_STATE_LAST_CHANGED: &str = "game.kruise.io/opsState-last-changed-time";
/// `GameServerStateLastChangedTime`: pod annotation.
pub const OKG_STATE_LAST_CHANGED: &str = "game.kruise.io/state-last-changed-time";
/// `GameServerUpdatingContainersKey` (#317): pod annotation listing the containers about to change.
pub const OKG_UPDATING_CONTAINERS: &str = "game.kruise.io/gs-updating-containers";
/// `AstsHashKey`: the Advanced StatefulSet annotation OKG compares to decide whether to update it.
pub const OKG_ASTS_HASH: &str = "game.kruise.io/asts-hash";
/// `GameServerSetReserveIdsKey`: the set annotation recording the explicit reserve ids of the last scale.
pub const OKG_RESERVE_IDS: &str = "game.kruise.io/reserve-ids";
/// `GsTemplateMetadataHashKey`: GameServer annotation.
pub const OKG_GS_TEMPLATE_METADATA_HASH: &str = "game.kruise.io/gsTemplate-metadata-hash";
/// `GameServerDeletingKey`: GameServer label under `reclaimPolicy: Delete`.
pub const OKG_GS_DELETING: &str = "game.kruise.io/gs-deleting";
/// `GameServerNodeNameKey`: GameServer label.
pub const OKG_NODE_NAME: &str = "game.kruise.io/node-name";
/// `InplaceUpdateNotReadyBlocker`: the label of the in-place hook OKG adds for `AllowNotReadyContainers`.
pub const OKG_INPLACE_NOT_READY_BLOCKER: &str = "game.kruise.io/inplace-update-not-ready-blocker";
/// `AllowNotReadyContainersNetworkConfName`: the networkConf entry that asks for that hook.
pub const OKG_ALLOW_NOT_READY_CONTAINERS: &str = "AllowNotReadyContainers";

/// GameServer states (`GameServerState`).
pub mod gs_state {
    pub const UNKNOWN: &str = "Unknown";
    pub const CREATING: &str = "Creating";
    pub const READY: &str = "Ready";
    pub const NOT_READY: &str = "NotReady";
    pub const CRASH: &str = "Crash";
    pub const UPDATING: &str = "Updating";
    pub const DELETING: &str = "Deleting";
    pub const PRE_DELETE: &str = "PreDelete";
    pub const PRE_UPDATE: &str = "PreUpdate";
}

/// opsStates (`OpsState`).
pub mod ops_state {
    pub const NONE: &str = "None";
    pub const ALLOCATED: &str = "Allocated";
    pub const MAINTAINING: &str = "Maintaining";
    pub const WAIT_TO_BE_DELETED: &str = "WaitToBeDeleted";
    pub const KILL: &str = "Kill";
}

// ---- Kruise: apis/apps/pub, apis/apps/v1beta1, k8s apps/v1 -----------------------------------------------

/// `apps.StatefulSetRevisionLabel` (= `ControllerRevisionHashLabelKey`): the full revision name.
pub const KRUISE_REVISION_LABEL: &str = "controller-revision-hash";
/// `history.ControllerRevisionHashLabel`: on ControllerRevisions, the safe-encoded hash.
pub const KRUISE_REVISION_HASH_ON_REVISION: &str = "controller.kubernetes.io/hash";
/// `apps.StatefulSetPodNameLabel`.
pub const KRUISE_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// `apps.PodIndexLabel` (Kruise feature gate `PodIndexLabel`, on by default).
pub const KRUISE_POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// `LifecycleStateKey`.
pub const KRUISE_LIFECYCLE_STATE: &str = "lifecycle.apps.kruise.io/state";
/// `LifecycleTimestampKey`.
pub const KRUISE_LIFECYCLE_TIMESTAMP: &str = "lifecycle.apps.kruise.io/timestamp";
/// `InPlaceUpdateStateKey`.
pub const KRUISE_INPLACE_STATE: &str = "apps.kruise.io/inplace-update-state";
/// `InPlaceUpdateStateKeyOld`: read as a fallback, removed on every in-place update.
pub const KRUISE_INPLACE_STATE_OLD: &str = "inplace-update-state";
/// `InPlaceUpdateGraceKey`.
pub const KRUISE_INPLACE_GRACE: &str = "apps.kruise.io/inplace-update-grace";
/// `InPlaceUpdateGraceKeyOld`.
pub const KRUISE_INPLACE_GRACE_OLD: &str = "inplace-update-grace";
/// `InPlaceUpdateReady`: the readiness gate OKG adds and Kruise's in-place update flips.
pub const KRUISE_INPLACE_READY: &str = "InPlaceUpdateReady";
/// `KruisePodReadyConditionType`: the readiness gate Kruise's pod webhook injects on every pod it owns.
pub const KRUISE_POD_READY: &str = "KruisePodReady";
/// The reason Kruise gives `InPlaceUpdateReady` False.
pub const KRUISE_REASON_START_INPLACE: &str = "StartInPlaceUpdate";

/// Lifecycle states (`LifecycleStateType`).
pub mod lifecycle {
    pub const PREPARING_NORMAL: &str = "PreparingNormal";
    pub const NORMAL: &str = "Normal";
    pub const PREPARING_UPDATE: &str = "PreparingUpdate";
    pub const UPDATING: &str = "Updating";
    pub const UPDATED: &str = "Updated";
    pub const PREPARING_DELETE: &str = "PreparingDelete";
}
