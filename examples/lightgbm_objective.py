"""Train LightGBM with fastloss objectives.

1. Tweedie regression through the native API: the fastloss objective reproduces LightGBM's
   ``tweedie`` objective, with sample weights and a validation set.
2. Quantile regression through the scikit-learn API (``LGBMRegressor``), with fastloss's
   pinball loss as objective and eval metric.

Run: ``python examples/lightgbm_objective.py`` (needs ``pip install lightgbm``).
"""

import warnings

import numpy as np
import lightgbm as lgb

import fastloss
import fastloss.lightgbm as flgb

rng = np.random.default_rng(0)
n = 5000
X = rng.normal(size=(n, 5))
log_mu = 0.5 * X[:, 0] - 0.3 * X[:, 1] ** 2 + 0.3 * X[:, 2]
# compound Poisson-gamma claims: many zeros, a continuous positive part
y = rng.poisson(np.exp(log_mu)) * rng.gamma(2.0, 1.5, size=n)
w = rng.uniform(0.5, 2.0, size=n)
tr, te = slice(0, 4000), slice(4000, None)

# -- 1. Tweedie: fastloss against the built-in objective ---------------------------------------
loss = fastloss.Tweedie(power=1.5)
obj = flgb.Objective(loss)
b = obj.intercept(y[tr], sample_weight=w[tr])            # log of the weighted mean
# LightGBM starts a custom objective from init_score and keeps it out of the model:
train = lgb.Dataset(X[tr], y[tr], weight=w[tr], init_score=obj.init_score(y[tr], intercept=b))
valid = lgb.Dataset(X[te], y[te], init_score=obj.init_score(y[te], intercept=b),
                    reference=train)
params = {"num_leaves": 15, "learning_rate": 0.1, "seed": 0, "verbose": -1,
          "deterministic": True, "force_row_wise": True}
ours = lgb.train({**params, "objective": obj, "metric": "None"}, train, 100,
                 valid_sets=[valid], feval=flgb.Metric(loss),
                 callbacks=[lgb.log_evaluation(50)])
builtin = lgb.train({**params, "objective": "tweedie", "tweedie_variance_power": 1.5},
                    lgb.Dataset(X[tr], y[tr], weight=w[tr]), 100)

mu_ours = obj.inverse_link(ours.predict(X[te]) + b)     # raw score + intercept, then exp
mu_builtin = builtin.predict(X[te])
print(f"Tweedie deviance on test: fastloss {loss.loss(y[te], np.log(mu_ours)):.5f}, "
      f"built-in {loss.loss(y[te], np.log(mu_builtin)):.5f}")
print(f"largest relative difference of the predicted means: "
      f"{np.max(np.abs(mu_ours / mu_builtin - 1)):.1e}")

# -- 2. the 90% quantile with the scikit-learn API ---------------------------------------------
# (LightGBM 4.7 renames fit's eval_set to eval_X/eval_y; eval_set works with every LightGBM 4)
warnings.filterwarnings("ignore", message="The argument 'eval_set' is deprecated")
q90 = fastloss.Quantile(quantile=0.9)
sk_obj = flgb.SklearnObjective(q90)          # (y_true, y_pred, weight): LightGBM passes weights
b90 = sk_obj.intercept(y[tr], sample_weight=w[tr])
model = lgb.LGBMRegressor(objective=sk_obj, n_estimators=200, num_leaves=15,
                          learning_rate=0.05, verbose=-1)
model.fit(X[tr], y[tr], sample_weight=w[tr], init_score=sk_obj.init_score(y[tr], intercept=b90),
          eval_set=[(X[te], y[te])], eval_init_score=[sk_obj.init_score(y[te], intercept=b90)],
          eval_metric=flgb.SklearnMetric(q90))
pred = model.predict(X[te]) + b90
print(f"90% quantile: {np.mean(y[te] <= pred):.1%} of test targets below the prediction; "
      f"pinball loss {q90.loss(y[te], pred):.4f} (constant: "
      f"{q90.loss(y[te], np.full(pred.shape, b90)):.4f})")
