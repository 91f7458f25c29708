#pragma once
// The error kinds live in native/common/errors.h (the backends throw them too).
#include "../common/errors.h"
