#pragma once
#include "simnpo/core/internal_check.hpp"
