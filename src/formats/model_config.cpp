#include "formats/model_config.h"
