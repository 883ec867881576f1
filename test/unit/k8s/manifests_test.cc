#include "k8s/manifests.h"
