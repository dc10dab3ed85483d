"""Train CatBoost with fastloss objectives.

1. Squared error: the fastloss objective reproduces CatBoost's ``RMSE`` (same intercept, Newton
   leaves), with sample weights.
2. A robust loss CatBoost does not have: pseudo-Huber, as objective and eval metric.

Run: ``python examples/catboost_objective.py`` (needs ``pip install catboost``).
"""

import numpy as np
from catboost import CatBoostRegressor, Pool

import fastloss
import fastloss.catboost as fcb

rng = np.random.default_rng(0)
n = 4000
X = rng.normal(size=(n, 5))
f = 1.0 + X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.3 * X[:, 2] * X[:, 3]
y = f + rng.normal(size=n)
w = rng.uniform(0.5, 2.0, size=n)
tr, te = slice(0, 3000), slice(3000, None)

# Newton leaves (a Python objective gets gradient steps otherwise), plain boosting, no random
# bootstrap or score noise: only the derivatives differ between the two models.
params = dict(iterations=100, depth=4, learning_rate=0.1, random_seed=0, verbose=0,
              boosting_type="Plain", bootstrap_type="No", random_strength=0,
              leaf_estimation_method="Newton", allow_writing_files=False)

# -- 1. MSE against RMSE ---------------------------------------------------------------------
loss = fastloss.MSE()
obj = fcb.Objective(loss)       # CatBoost's sign convention and half squared error inside
b = obj.intercept(y[tr], sample_weight=w[tr])           # the weighted mean
ours = CatBoostRegressor(loss_function=obj, eval_metric=fcb.Metric(loss), **params)
ours.fit(X[tr], y[tr], sample_weight=w[tr], baseline=obj.init_score(y[tr], intercept=b))
obj.set_intercept(ours, b)      # the baseline is not part of the model: add it to its bias
builtin = CatBoostRegressor(loss_function="RMSE", **params)
builtin.fit(X[tr], y[tr], sample_weight=w[tr])
p_ours, p_builtin = ours.predict(X[te]), builtin.predict(X[te])
print(f"test MSE: fastloss {loss.loss(y[te], p_ours):.6f}, RMSE objective "
      f"{loss.loss(y[te], p_builtin):.6f}; "
      f"largest difference {np.max(np.abs(p_ours - p_builtin)):.1e}")

# -- 2. pseudo-Huber on data with outliers ---------------------------------------------------
y_out = y.copy()
outliers = rng.uniform(size=n) < 0.05
y_out[outliers] += rng.normal(scale=30.0, size=int(outliers.sum()))
ph = fastloss.PseudoHuber(delta=1.0)
obj_ph = fcb.Objective(ph)
b_ph = obj_ph.intercept(y_out[tr])
robust = CatBoostRegressor(loss_function=obj_ph, eval_metric=fcb.Metric(ph), **params)
# with a baseline for training, CatBoost wants one for the evaluation set too
robust.fit(X[tr], y_out[tr], baseline=obj_ph.init_score(y_out[tr], intercept=b_ph),
           eval_set=Pool(X[te], y_out[te], baseline=obj_ph.init_score(y_out[te], intercept=b_ph)))
obj_ph.set_intercept(robust, b_ph)
plain = CatBoostRegressor(loss_function="RMSE", **params).fit(X[tr], y_out[tr])
def rms_error(model):
    return np.sqrt(np.mean((model.predict(X[te]) - f[te]) ** 2))


print(f"pseudo-Huber eval metric, best iteration: {robust.get_best_iteration()}")
print(f"RMS error against the clean signal: pseudo-Huber {rms_error(robust):.3f}, "
      f"RMSE objective {rms_error(plain):.3f}")
